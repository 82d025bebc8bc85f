"""Simulated labeling: replay active-learning rounds on clips whose labels are known, and summarise.

The analysis flow (``flows/analysis.py``) answers the seed notebook's four questions with it:
re-ranking vs a fixed order, the best strategy per concept, the consensus method, and where
labeling can stop. Everything here takes plain arrays (features and a 0/1 label matrix), so any
labeled data set can be simulated. See ``docs/analysis.md``.

Oracle orderings (:mod:`mlci.analysis.oracles`) read true labels and exist only here.
"""

from mlci.analysis.consensus_study import (
    DEFAULT_PROFILES,
    AnnotatorProfile,
    consensus_study,
)
from mlci.analysis.engine import (
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
from mlci.analysis.exceptions import (
    NotEnoughDataError,
    SimulationError,
    UnknownSimulationStrategyError,
)
from mlci.analysis.linear import LogisticFit, fit_logistic, predict_logistic
from mlci.analysis.metrics import METRICS, average_precision, column_metrics, roc_auc
from mlci.analysis.oracles import OracleInlier, OracleOutlier
from mlci.analysis.report import answers, render_report
from mlci.analysis.schedules import (
    SEED_SCHEDULES,
    Schedule,
    doubling,
    fixed_depth,
    parse_schedule,
)
from mlci.analysis.stopping import (
    STOPPING_RULES,
    evaluate_stopping,
    oof_plateau,
    overall_uncertainty,
    prediction_kappa,
    stabilizing_predictions,
)
from mlci.analysis.strategies import (
    SEED_STRATEGIES,
    SIMULATION_ONLY,
    make_simulation_strategy,
    simulation_strategy_names,
)
from mlci.analysis.summarise import AnalysisSummary, summarise_analysis

__all__ = [
    "CURVE_COLUMNS",
    "DEFAULT_PROFILES",
    "METRICS",
    "SEED_SCHEDULES",
    "SEED_STRATEGIES",
    "SIMULATION_ONLY",
    "STOPPING_RULES",
    "AnalysisSummary",
    "AnnotatorProfile",
    "LogisticFit",
    "NotEnoughDataError",
    "OracleInlier",
    "OracleOutlier",
    "Repetition",
    "Schedule",
    "SimulationConfig",
    "SimulationData",
    "SimulationError",
    "SimulationResult",
    "Unit",
    "UnknownSimulationStrategyError",
    "answers",
    "average_precision",
    "column_metrics",
    "prediction_kappa",
    "collect_result",
    "consensus_study",
    "doubling",
    "evaluate_stopping",
    "fit_logistic",
    "fixed_depth",
    "make_data",
    "make_simulation_strategy",
    "oof_plateau",
    "overall_uncertainty",
    "parse_schedule",
    "plan_units",
    "predict_logistic",
    "prepare_repetition",
    "reference_frame",
    "render_report",
    "roc_auc",
    "run_unit",
    "simulate",
    "simulation_strategy_names",
    "sort_curves",
    "stabilizing_predictions",
    "summarise_analysis",
]
