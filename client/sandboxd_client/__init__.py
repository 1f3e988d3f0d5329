"""Client library for the sandboxd gRPC service (`sandboxd.v1.Sandbox`).

The wire contract is proto/sandboxd/v1/sandbox.proto. The gRPC client and the generated
protobuf/gRPC stubs arrive with the service issue; until then this package only carries its
version, so that the daemon and other services can already depend on the distribution.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
