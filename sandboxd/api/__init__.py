"""The gRPC edge: the `sandboxd.v1.Sandbox` servicer, its handler table, the conversion between
protobuf messages and the daemon's types, errors as gRPC status, the call guard (the
interceptor) and reflection. Only this package (with server.py, which wires it, and the health
command) imports grpc and protobuf; tests/unit/test_layers.py keeps it so."""
