# kernels-service: Jupyter kernels over HTTP and websockets.
# Built from Debian packages alone (python3 + python3-venv), so it also builds where no
# other image registry is reachable. Derived images install a kernel and set KERNEL_NAME.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/kernels-service
ENV PATH=/opt/kernels-service/bin:$PATH

COPY setup.cfg pyproject.toml README.md kernels.py /srv/kernels-service/
COPY kernels_service /srv/kernels-service/kernels_service
RUN pip install --no-cache-dir /srv/kernels-service

RUN useradd --create-home --uid 1000 kernels
USER kernels
WORKDIR /home/kernels

# Bind every interface inside the container; the token comes from KERNELS_SERVICE_TOKEN
# (unset: a random token is generated and printed in the log).
ENV IP=0.0.0.0 \
    PORT=8000 \
    KERNEL_NAME=python3
EXPOSE 8000

# tini is PID 1: it reaps kernel processes and forwards SIGTERM, so kernels neither
# restart-loop nor outlive the service. Options go after the image name:
#   docker run -p 8000:8000 IMAGE --base-path=/krn/
ENTRYPOINT ["tini", "--", "kernels-service"]
