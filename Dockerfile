# fnlb: a small, non-root image whose entry point is the `fnlb` command of the README.
#
#   docker build -t fnlb .
#   docker run --rm -p 8081:8081 -p 8082:8082 fnlb -nodes fn1:8080,fn2:8080
#
# Flags go after the image name, as on the command line (`fnlb -listen ...` = `fnlb serve
# -listen ...`); every flag is also an environment variable FNLB_<FLAG>. The health check
# asks the management API on the port of FNLB_MGMT_LISTEN, so change the API's port with
# that variable rather than with -mgmt-listen.

# The base image is pinned to a Python patch release and Debian release; move it on purpose
# (and run scripts/test.sh), never by a rebuild. Pin the digest too where a registry is at hand:
# python:3.11.14-slim-bookworm@sha256:...
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY fnlb ./fnlb
# Every dependency ships manylinux wheels; fnlb's own call path is compiled to C with mypyc
# (setup.py, docs/proxy.md "Compiled modules"), which needs gcc in this stage only: the image
# gets the compiled modules, not the compiler. Debian's gcc is whatever bookworm's current
# point release carries (the C it compiles is mypyc's, pinned in constraints.txt).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# constraints.txt pins every runtime dependency (and the build backend, through
# PIP_CONSTRAINT, which pip's isolated build environment also obeys) to the tested versions.
ENV PIP_CONSTRAINT=/src/constraints.txt
RUN pip install --no-cache-dir --no-compile --prefix=/install .

FROM python:3.11.14-slim-bookworm
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/fnlb --create-home fnlb
# numeric, so Kubernetes (runAsNonRoot) can tell it is not root
USER 10001:10001
WORKDIR /var/lib/fnlb
ENV FNLB_LISTEN=:8081 \
    FNLB_MGMT_LISTEN=:8082 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# calls, management API, gossip (UDP probes and TCP push-pull)
EXPOSE 8081 8082 8946/udp 8946/tcp
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('FNLB_MGMT_LISTEN', ':8081').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3)"]
ENTRYPOINT ["fnlb"]
CMD ["serve"]
