from tests.stores.support import clock, make_manager, store, stores

__all__ = ["clock", "make_manager", "store", "stores"]
