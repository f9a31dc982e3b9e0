# The exporter on a kernel older than the oldest supported (sourced by
# init.sh): it must exit non-zero with one line on stderr.
section exporter sh -c 'http-golden-exporter --config.file /etc/http-golden-exporter.toml --user nobody \
    >/tmp/stdout 2>/tmp/stderr'
section stderr cat /tmp/stderr
section stdout cat /tmp/stdout
