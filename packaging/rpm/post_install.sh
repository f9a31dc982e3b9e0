# The system user first, then Fedora's preset convention (%systemd_post):
# on first install the unit is enabled only if a preset says so.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers http-golden-exporter.conf || :
elif ! getent passwd http-golden-exporter >/dev/null; then
    useradd -r -U -d / -M -s /sbin/nologin -c "HTTP golden metrics exporter" http-golden-exporter || :
fi
if [ "$1" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload preset http-golden-exporter.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
