"""Planning: memory and speed estimates for a Recipe (no torch at import), and the harness that checks them."""

from vittui.planning.memory import MemoryEstimate, ModelDims, estimate

__all__ = ["MemoryEstimate", "ModelDims", "estimate"]
