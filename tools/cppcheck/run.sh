#!/usr/bin/env bash
# cppcheck over Hato's C sources: warnings, portability and performance
# checks, with what cppcheck cannot know in hato.cfg and the reviewed false
# positives in suppressions.txt. Exits non-zero on any other finding.
# Run from anywhere: tools/cppcheck/run.sh [extra cppcheck options]
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tools/cppcheck
exec cppcheck --quiet --error-exitcode=1 --std=c11 -D_GNU_SOURCE -I. \
	--enable=warning,portability,performance --inline-suppr \
	--library="$here/hato.cfg" --suppressions-list="$here/suppressions.txt" \
	--template='{file}:{line}: {severity} ({id}): {message}' \
	-j"${HATO_CPPCHECK_JOBS:-2}" "$@" \
	core mail routes conf sql intake gateway ctl
