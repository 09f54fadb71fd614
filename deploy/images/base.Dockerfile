# Python base image built from the debootstrapped Debian rootfs (see
# deploy/prepare-offline.sh). Used as PY_BASE for services/gateway/Dockerfile.
ARG BASE
FROM ${BASE}
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
CMD ["python3"]
