#!/bin/sh
# Entrypoint of the nginx stand-in image: the public image's 20-envsubst-on-templates step.
# Each /etc/nginx/templates/NAME.template becomes /etc/nginx/conf.d/NAME with only the
# environment variables whose names match NGINX_ENVSUBST_FILTER (a regular expression)
# replaced, so nginx's own $variables stay untouched.
set -eu

templates=/etc/nginx/templates
if [ -d "$templates" ]; then
    names=$(env | cut -d= -f1 | grep -E "${NGINX_ENVSUBST_FILTER:-.*}" || true)
    # envsubst's SHELL-FORMAT: the literal text ${NAME} for each name, hence single quotes;
    # the names are words to split.
    # shellcheck disable=SC2016,SC2086
    defined=$(printf '${%s} ' $names)
    for template in "$templates"/*.template; do
        [ -e "$template" ] || continue
        output="/etc/nginx/conf.d/$(basename "$template" .template)"
        envsubst "$defined" <"$template" >"$output"
    done
fi

exec "$@"
