#!/bin/sh
# lint-man.sh PAGE...: fails on any warning about the built man pages, from
# mandoc's linter, from groff (all warnings on, tables preprocessed) and from
# man-db at 80 columns exactly as lintian runs it, so the packages stay
# lintian-clean.
set -eu
[ $# -gt 0 ] || { echo "lint-man: no man pages given" >&2; exit 1; }
for tool in mandoc groff man; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "lint-man: $tool not found (sh .ci/deps installs mandoc, groff-base, man-db)" >&2; exit 1; }
done
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
bad=0
for page in "$@"; do
    # -W warning: report warnings and worse (mandoc's STYLE hints are not
    # warnings) and exit non-zero when there are any.
    if ! mandoc -Tlint -W warning "$page" >"$tmp" 2>&1 || [ -s "$tmp" ]; then
        cat "$tmp" >&2; bad=1
    fi
    groff -t -man -ww -z "$page" >"$tmp" 2>&1 || true
    [ -s "$tmp" ] && { sed "s|^|groff: |" "$tmp" >&2; bad=1; }
    LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
        man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>"$tmp" >/dev/null || true
    [ -s "$tmp" ] && { sed "s|^|man: |" "$tmp" >&2; bad=1; }
    # An unsubstituted placeholder means the page was not built by make man.
    if grep -n '@[A-Z][A-Z_]*@' "$page" >&2; then bad=1; fi
done
[ $bad -eq 0 ] || { echo "lint-man: FAILED" >&2; exit 1; }
echo "lint-man: $# page(s) clean"
