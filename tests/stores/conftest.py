from tests.stores.support import clock, make_manager, redis_cluster, store, stores

__all__ = ["clock", "make_manager", "redis_cluster", "store", "stores"]
