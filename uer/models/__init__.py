"""The five-part model and how it is built and saved."""
from uer.models.build import build_model
from uer.models.model import Model

__all__ = ["Model", "build_model"]
