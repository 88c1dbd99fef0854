# The image of every K2 service in deploy/compose.yaml: the `k2` command, run as a non-root user.
#   docker build -t k2:0.1.0 .      (compose builds it: docker compose -f deploy/compose.yaml build)
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 k2 \
 && useradd --system --uid 10001 --gid k2 --home-dir /var/lib/k2 --create-home --shell /usr/sbin/nologin k2

# The project without its dev extras (what pyproject.toml's [project] dependencies name).
WORKDIR /tmp/k2-src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /tmp/k2-src

USER k2
WORKDIR /var/lib/k2
ENV K2_DATA_DIR=/var/lib/k2/data

ENTRYPOINT ["k2"]
CMD ["--help"]
