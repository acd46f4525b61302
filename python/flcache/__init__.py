"""flcache from Python: push model updates to an flcache job and read its
merged models and history (docs/protocol.md; README "From Python / PyTorch").

    from flcache import Store
    s = Store("redis://localhost:6379")
    s.push_update("job", 1, "c1", model.state_dict(), num_samples=600, loss=0.4)
    model.load_state_dict(s.pull_model("job", 1, layout=model.state_dict()))
"""
from .errors import FlcacheError, FrameError, RoundClosed, Timeout
from .layout import Layout, flatten, layout_of, unflatten
from .programs import finish_aggregate, find_flcache
from .store import Store

__all__ = ["Store", "finish_aggregate", "find_flcache", "Layout", "flatten", "unflatten",
           "layout_of", "FlcacheError", "FrameError", "RoundClosed", "Timeout"]
