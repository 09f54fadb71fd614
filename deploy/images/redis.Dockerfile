# Redis from Debian's redis-server package, installed into the rootfs at
# debootstrap time (deploy/prepare-offline.sh), so this build needs no network.
# Behaves like the official image for our compose file: runs redis-server in
# the foreground as user redis, data in /data, reachable from other containers.
ARG BASE
FROM ${BASE}
RUN mkdir -p /data && chown redis:redis /data
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
# protected-mode off: without a config file Redis 7 would refuse clients from
# other containers (the official image patches that default the same way).
CMD ["redis-server", "--protected-mode", "no", "--dir", "/data"]
