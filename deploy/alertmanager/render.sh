#!/bin/sh
# Render Alertmanager's config with the webhook URLs from the environment, then run a command.
#
#   render.sh SOURCE TARGET COMMAND [ARG...]
#
# SOURCE is alertmanager.yml with its placeholder URLs; TARGET gets a copy in which
# http://critical.webhook.invalid/ is $ALERT_WEBHOOK_CRITICAL_URL and
# http://default.webhook.invalid/ is $ALERT_WEBHOOK_DEFAULT_URL; then COMMAND replaces this
# shell (in the compose stack: /bin/alertmanager --config.file=TARGET ...). POSIX sh and awk only
# (the prom/alertmanager image is busybox).
set -eu
if [ "$#" -lt 3 ]; then
  echo "usage: render.sh SOURCE TARGET COMMAND [ARG...]" >&2
  exit 2
fi
source=$1
target=$2
shift 2
for name in ALERT_WEBHOOK_CRITICAL_URL ALERT_WEBHOOK_DEFAULT_URL; do
  eval "value=\${$name:-}"
  case $value in
    http://?* | https://?*) ;;
    *) echo "render.sh: $name must be an http:// or https:// URL (deploy/.env)" >&2; exit 2 ;;
  esac
  case $value in
    *\"* | *\\* | *" "*)
      echo "render.sh: $name must not contain quotes, backslashes or spaces" >&2; exit 2 ;;
  esac
done
# literal replacement (no regular expressions, no & or \ expansion)
awk '
  function swap(text, from, to,   at, out) {
    out = ""
    while ((at = index(text, from)) > 0) {
      out = out substr(text, 1, at - 1) to
      text = substr(text, at + length(from))
    }
    return out text
  }
  {
    line = swap($0, "http://critical.webhook.invalid/", ENVIRON["ALERT_WEBHOOK_CRITICAL_URL"])
    print swap(line, "http://default.webhook.invalid/", ENVIRON["ALERT_WEBHOOK_DEFAULT_URL"])
  }
' "$source" > "$target.tmp"
mv "$target.tmp" "$target"
exec "$@"
