"""Keep-alive and pre-warm policies for scale-to-zero functions, and the simulator that scores them.

See `simulator` for the accounting model, `policies` for the baselines (fixed keep-alive, the hybrid
histogram policy of "Serverless in the Wild", bounds) and `mpcloud` for mpcloud's policy.
"""

from predictors.keepalive.mpcloud import MpcloudPolicy
from predictors.keepalive.policies import FixedKeepAlive, HybridHistogram, NeverUnload, Oracle
from predictors.keepalive.registry import make_policy
from predictors.keepalive.simulator import SimResult, simulate, summarize

__all__ = [
    "FixedKeepAlive", "HybridHistogram", "MpcloudPolicy", "NeverUnload", "Oracle", "SimResult",
    "make_policy", "simulate", "summarize",
]
