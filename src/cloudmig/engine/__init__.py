"""The reconciler: claims tasks by lease and takes one idempotent step at a time."""
