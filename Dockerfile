# sandboxd: the gRPC daemon, its engine and client library, with Python 3 and Node.js for the
# workers. Build: `podman build --format docker -t sandboxd .` (docker format keeps the
# HEALTHCHECK). Run it as docs/operations.md "Running in a container" says: the flags there are needed.
#
# BASE_IMAGE must be Debian 12 (bookworm) or an image built from it: both stages use its
# python3, and the runtime stage runs the build stage's virtualenv against the same python3.
ARG BASE_IMAGE=debian:bookworm-slim

# --------------------------------------------------------------------------- build: wheels
FROM ${BASE_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The third-party packages exactly as requirements.lock pins them (versions and sha256 hashes;
# everything is pure Python or has manylinux wheels on PyPI: no compiler), then the three
# distributions without resolving anything, into a directory the runtime stage copies into the
# system python3's dist-packages. Not a virtualenv: the engine execs its zygote and workers with
# the real interpreter (`/usr/bin/python3.11 -I`).
COPY requirements.lock /src/
COPY pool/ /src/pool/
COPY client/ /src/client/
COPY pyproject.toml README.md /src/
COPY sandboxd/ /src/sandboxd/
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret:
# `--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt` (the host's trust store).
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes --no-deps -r /src/requirements.lock \
    && /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile \
        --require-hashes --no-deps --target /out/dist-packages -r /src/requirements.lock \
    && /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile \
        --no-deps --no-build-isolation --target /out/dist-packages /src/pool /src/client /src \
    && rm -rf /out/dist-packages/setuptools* /out/dist-packages/pkg_resources \
        /out/dist-packages/_distutils_hack /out/dist-packages/distutils-precedence.pth \
        /out/dist-packages/bin \
    && python3 -m compileall -q /out/dist-packages \
    && printf '#!/bin/sh\nexec /usr/bin/python3 -m sandboxd "$@"\n' > /out/sandboxd \
    && chmod 755 /out/sandboxd

# --------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
# python3      the daemon, and the interpreter of the Python workers (tzdata: the jail binds
#              /usr/share/zoneinfo; ca-certificates: /etc/ssl for programs that use TLS libs)
# nodejs       the JavaScript workers
# libseccomp2  the workers' seccomp filter (loaded by pyseccomp)
# uidmap       newuidmap/newgidmap: the non-root daemon maps each worker to one of its
#              subordinate ids. Debian 12 ships them setuid root, and then they write the map as
#              euid 0, which needs CAP_SYS_ADMIN (not granted to a container); with file
#              capabilities instead (cap_setuid / cap_setgid, as Fedora ships them) they write it
#              as the daemon's user, the owner of the worker's user namespace, which needs only
#              CAP_SETUID/CAP_SETGID in the bounding set (granted by default). Either way the
#              container must NOT run with no-new-privileges. libcap2-bin (setcap) is removed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 nodejs libseccomp2 uidmap tzdata ca-certificates libcap2-bin \
    && chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \
    && setcap cap_setuid=ep /usr/bin/newuidmap \
    && setcap cap_setgid=ep /usr/bin/newgidmap \
    && apt-get purge -y libcap2-bin \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
# The daemon's user, with subordinate uids/gids for the workers: worker slot n runs as uid/gid
# 20000+n of the container's user namespace (slots never exceed 4096). The range lies inside
# ids 0-65535, the only ones a user-namespaced container has (a Kubernetes pod with
# `hostUsers: false`, rootless podman, docker's userns-remap), clear of the daemon (10001) and
# of nobody (65534); at start the engine checks that the ids exist in its user namespace and
# refuses to start naming a fitting range if they do not. The same range for root: run as the
# container's root (`--user 0`, in a user namespace), the daemon can use a cgroup delegated to
# the container, whose files belong to that root (docs/operations.md "Real limits in a container"). Only
# one of the two users runs the daemon.
ARG SANDBOXD_UID=10001
RUN groupadd --system --gid ${SANDBOXD_UID} sandboxd \
    && useradd --system --uid ${SANDBOXD_UID} --gid sandboxd --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sandboxd \
    && echo "sandboxd:20000:4096" > /etc/subuid \
    && echo "sandboxd:20000:4096" > /etc/subgid \
    && echo "root:20000:4096" >> /etc/subuid \
    && echo "root:20000:4096" >> /etc/subgid \
    && mkdir -p /etc/sandboxd
COPY --from=build /out/dist-packages/ /usr/local/lib/python3.11/dist-packages/
COPY --from=build /out/sandboxd /usr/local/bin/sandboxd

ENV PYTHONUNBUFFERED=1 \
    SANDBOXD_LISTEN=0.0.0.0:50051 \
    SANDBOXD_TENANTS=/etc/sandboxd/tenants.toml \
    SANDBOXD_METRICS_HOST=0.0.0.0 \
    SANDBOXD_METRICS_PORT=9090
USER sandboxd
EXPOSE 50051 9090
# grpc.health.v1: SERVING once every runtime's workers boot.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["sandboxd", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["sandboxd", "serve"]
