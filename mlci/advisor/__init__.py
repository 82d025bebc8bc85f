"""The stop advisor: per concept and every night, whether labeling it still pays, with the evidence.

:mod:`~mlci.advisor.signals` measures, :mod:`~mlci.advisor.verdict` judges,
:mod:`~mlci.advisor.record` keeps one record per model version in the store.
"""

from mlci.advisor.record import AdvisorNight, load_advice, load_history, record_night
from mlci.advisor.signals import choose_stop_set, night_signals, stop_predictions
from mlci.advisor.verdict import ADVICE_RULES, VERDICTS, StopAdvisor, gain_per_100

__all__ = [
    "ADVICE_RULES",
    "VERDICTS",
    "AdvisorNight",
    "StopAdvisor",
    "choose_stop_set",
    "gain_per_100",
    "load_advice",
    "load_history",
    "night_signals",
    "record_night",
    "stop_predictions",
]
