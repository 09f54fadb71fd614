# HAProxy from Debian's haproxy package, installed into the rootfs at
# debootstrap time (deploy/prepare-offline.sh), so this build needs no network.
# Same config path and user as the official haproxy image.
ARG BASE
FROM ${BASE}
RUN mkdir -p /usr/local/etc/haproxy /var/lib/haproxy \
    && chown haproxy:haproxy /var/lib/haproxy
USER haproxy
EXPOSE 8080 8404
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
