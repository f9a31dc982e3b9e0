# %systemd_postun_with_restart: on upgrade, restart a running service.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart http-golden-exporter.service >/dev/null 2>&1 || :
    fi
fi
