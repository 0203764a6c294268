from tests.api.conftest import gateway, gateway_factory

__all__ = ["gateway", "gateway_factory"]
