# kernels-service: Jupyter kernels over HTTP, websockets and socket.io.
# Built from Debian packages and PyPI alone, so it builds where no other image registry is
# reachable: `python docker/image.py build` builds it (podman on a debootstrapped base, or
# docker). Derived images install a kernel with pip and set KERNEL_NAME
# (examples/derived-bash/Dockerfile).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# Not pinned: BASE_IMAGE may be any Debian release, and a stable release changes these
# packages only for security fixes, which a rebuild should take.
# The user `kernels` is in group 0, and its home is group-writable, so the image also runs
# under an arbitrary uid in group 0 (OpenShift, `--user 12345:0`).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && useradd --create-home --uid 1000 --gid 0 kernels \
 && chmod g=u /home/kernels \
 && install -d -o kernels -g 0 /opt/kernels-service /srv/kernels-service

# The venv belongs to `kernels`, so a derived image installs kernels with plain
# `RUN pip install ...`, no USER switch.
USER 1000
ENV PATH=/opt/kernels-service/bin:$PATH \
    HOME=/home/kernels
# The dependencies first, read from setup.cfg: a layer that a change of the service's
# code does not invalidate. Then the service itself.
COPY --chown=kernels:0 setup.cfg /srv/kernels-service/
RUN python3 -m venv /opt/kernels-service \
 && python3 -c "import configparser; c = configparser.ConfigParser(); c.read('/srv/kernels-service/setup.cfg'); print(c['options']['install_requires'])" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY --chown=kernels:0 pyproject.toml README.md /srv/kernels-service/
COPY --chown=kernels:0 kernels_service /srv/kernels-service/kernels_service
RUN pip install --no-cache-dir --no-deps /srv/kernels-service \
 && rm -rf /srv/kernels-service/build /srv/kernels-service/*.egg-info

# The original image's form `IMAGE sh -c "/srv/kernels.py --base-path=/krn/"` still works.
COPY kernels.py /srv/kernels.py
COPY docker/entrypoint.py /usr/local/bin/kernels-entrypoint
COPY docker/healthcheck.py /usr/local/bin/kernels-healthcheck

WORKDIR /home/kernels
# The service starts as root, only to give each kernel a uid of its own (60000-61183, no
# capability: docs/security.md, Kernels kept apart); it keeps only the capabilities that
# takes and sets no_new_privs. Run with `--user 1000` (or any uid), it has no privilege,
# and its kernels share its uid.
# hadolint ignore=DL3002
USER 0
# Bind every interface inside the container; the token comes from KERNELS_SERVICE_TOKEN
# (unset: a random token is generated and printed in the log).
ENV IP=0.0.0.0 \
    PORT=8000 \
    KERNEL_NAME=python3
EXPOSE 8000

# GET /api/health on $PORT: no token needed, nothing revealed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["kernels-healthcheck"]

# tini is PID 1: it reaps kernel processes and forwards SIGTERM, so kernels neither
# restart-loop nor outlive the service. The entry point starts as PID 1, then execs tini
# with an empty environment and runs under it with the container's: PID 1's environment
# is readable by every process of its uid, kernels included (docker/entrypoint.py).
# Options go after the image name:
#   docker run -p 8000:8000 IMAGE --base-path=/krn/
# and a command that is not an option runs as given.
ENTRYPOINT ["kernels-entrypoint"]
