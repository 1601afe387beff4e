"""reconciler: keeps live configuration equal to a versioned desired state, or explains why not.

The public API is small; everything else is internal and may change.
"""

from __future__ import annotations

from reconciler.classify.classifier import classify
from reconciler.desired.loader import load as load_desired
from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.parity import PairResult, ParityItem, compare_environments
from reconciler.domain.drift import Classified, Comparison, DriftItem
from reconciler.domain.manifest import DriftClass, DriftOp, Target
from reconciler.domain.policy import Policy
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError, PermanentError, ReconcilerError, TemporaryError

__version__ = "0.1.0"

__all__ = [
    "Classified",
    "CompareOptions",
    "Comparison",
    "ConfigurationError",
    "DesiredState",
    "DriftClass",
    "DriftItem",
    "DriftOp",
    "PairResult",
    "ParityItem",
    "PermanentError",
    "Policy",
    "ReconcilerError",
    "Target",
    "TemporaryError",
    "__version__",
    "classify",
    "compare",
    "compare_environments",
    "load_desired",
]
