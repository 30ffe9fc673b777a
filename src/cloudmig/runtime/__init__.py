"""The composition root: what a process builds once (settings, store, secret box, instances,
clock, notifier) and hands to the services and the engine alike."""

from cloudmig.runtime.context import AppContext, build_context, prepare_data_dir, task_source

__all__ = ["AppContext", "build_context", "prepare_data_dir", "task_source"]
