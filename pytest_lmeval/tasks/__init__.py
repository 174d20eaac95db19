"""Task declarations (lm-eval YAML), data loading, prompts and the task registry."""

from ..core.requests import DocRequests
from .config import GroupConfig, TaskConfig
from .registry import Registry
from .task import Task

__all__ = ["DocRequests", "GroupConfig", "Registry", "Task", "TaskConfig"]
