"""trajgate: a Python client for the trajgate checkpoint storage gateway.

    from trajgate import Client
    with Client("http://localhost:8080").run("mnist-1", planned_steps=900, train_size=60000) as run:
        for step in range(1, 901):
            run.log(step, trainLoss=loss, lr=0.1)
            if step % 30 == 0:
                run.checkpoint(step, {"w": w, "b": b})

The core uses the standard library only; numpy (tensor maps, `load`) and torch (state dicts) are used when
the caller hands them in.
"""

from .client import Client
from .error_codes import ERROR_CODES, ERROR_STATUS
from .errors import BackgroundError, TrajgateConnectionError, TrajgateError
from .retry import RetryPolicy
from .run import Run
from .safetensors import DTYPE_SIZES, load
from .stats import GradientStats, TrainingStats
from .tensors import RawTensor

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Run",
    "RetryPolicy",
    "TrajgateError",
    "TrajgateConnectionError",
    "BackgroundError",
    "ERROR_CODES",
    "ERROR_STATUS",
    "DTYPE_SIZES",
    "RawTensor",
    "TrainingStats",
    "GradientStats",
    "load",
]
