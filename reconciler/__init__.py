"""reconciler: keeps live configuration equal to a versioned desired state, or explains why not.

The public API is small; everything else is internal and may change. docs/library.md shows it: compare
configuration documents (compare_configs, compare_many) or the environments of a desired state
(compare_environments, allowlist_findings).
"""

from __future__ import annotations

from reconciler.classify.classifier import classify
from reconciler.desired.loader import load as load_desired
from reconciler.diff.allowlist import Finding
from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.configs import ConfigDiff, Difference, DiffOptions, compare_configs, compare_many
from reconciler.diff.parity import PairResult, ParityItem, compare_environments
from reconciler.diff.parity import findings as allowlist_findings
from reconciler.domain.drift import Classified, Comparison, DriftItem
from reconciler.domain.manifest import DriftClass, DriftOp, Target
from reconciler.domain.paths import MISSING
from reconciler.domain.policy import Policy
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError, PermanentError, ReconcilerError, TemporaryError

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "Classified",
    "CompareOptions",
    "Comparison",
    "ConfigDiff",
    "ConfigurationError",
    "DesiredState",
    "DiffOptions",
    "Difference",
    "DriftClass",
    "DriftItem",
    "DriftOp",
    "Finding",
    "PairResult",
    "ParityItem",
    "PermanentError",
    "Policy",
    "ReconcilerError",
    "Target",
    "TemporaryError",
    "__version__",
    "allowlist_findings",
    "classify",
    "compare",
    "compare_configs",
    "compare_environments",
    "compare_many",
    "load_desired",
]
