"""Simulated labeling: replay active-learning rounds on clips whose labels are known, and summarise.

The analysis flow (``flows/analysis.py``) answers the seed notebook's four questions with it:
re-ranking vs a fixed order, the best strategy per concept, the consensus method, and where
labeling can stop. Everything here takes plain arrays (features and a 0/1 label matrix), so any
labeled data set can be simulated. See ``docs/analysis.md``.

Oracle orderings (:mod:`mlci.simulate.oracles`) read true labels and exist only here.
"""

from mlci.simulate.analysis import AnalysisSummary, summarise_analysis
from mlci.simulate.consensus_study import DEFAULT_PROFILES, AnnotatorProfile, consensus_study
from mlci.simulate.engine import (
    CURVE_COLUMNS,
    Repetition,
    SimulationConfig,
    SimulationData,
    SimulationResult,
    Unit,
    collect_result,
    make_data,
    plan_units,
    prepare_repetition,
    reference_frame,
    run_unit,
    simulate,
    sort_curves,
)
from mlci.simulate.exceptions import NotEnoughDataError, SimulationError, UnknownSimulationStrategyError
from mlci.simulate.linear import LogisticFit, fit_logistic, predict_logistic
from mlci.simulate.metrics import METRICS, average_precision, binary_metrics, roc_auc
from mlci.simulate.oracles import OracleInlier, OracleOutlier
from mlci.simulate.report import answers, render_report
from mlci.simulate.schedules import SEED_SCHEDULES, Schedule, doubling, fixed_depth, parse_schedule
from mlci.simulate.stopping import (
    STOPPING_RULES,
    cohen_kappa,
    evaluate_stopping,
    oof_plateau,
    overall_uncertainty,
    stabilizing_predictions,
)
from mlci.simulate.strategies import (
    SEED_STRATEGIES,
    SIMULATION_ONLY,
    make_simulation_strategy,
    simulation_strategy_names,
)

__all__ = [
    "AnalysisSummary",
    "summarise_analysis",
    "AnnotatorProfile",
    "DEFAULT_PROFILES",
    "consensus_study",
    "answers",
    "render_report",
    "CURVE_COLUMNS",
    "Repetition",
    "SimulationConfig",
    "SimulationData",
    "SimulationResult",
    "Unit",
    "collect_result",
    "make_data",
    "plan_units",
    "prepare_repetition",
    "reference_frame",
    "run_unit",
    "simulate",
    "sort_curves",
    "SimulationError",
    "NotEnoughDataError",
    "UnknownSimulationStrategyError",
    "LogisticFit",
    "fit_logistic",
    "predict_logistic",
    "METRICS",
    "average_precision",
    "binary_metrics",
    "roc_auc",
    "OracleInlier",
    "OracleOutlier",
    "SEED_SCHEDULES",
    "Schedule",
    "doubling",
    "fixed_depth",
    "parse_schedule",
    "STOPPING_RULES",
    "cohen_kappa",
    "evaluate_stopping",
    "oof_plateau",
    "overall_uncertainty",
    "stabilizing_predictions",
    "SEED_STRATEGIES",
    "SIMULATION_ONLY",
    "make_simulation_strategy",
    "simulation_strategy_names",
]
