#!/usr/bin/env bash
# Install everything audiossl needs on Debian 12; safe to re-run (skips what is there).
#   - Debian's contrib and non-free components are enabled for the mbrola, pico and
#     RHVoice speech engines used by the offline corpus (egs/mini_tts).
#   - apt packages: sox, speech engines, offline texts, CC0 ambience recordings (noise),
#     fluidsynth and a General MIDI soundfont (mini_music).
#   - pip: this package (editable) with its pinned dependencies, and pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
apt_packages="sox libsox-fmt-all espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
  mbrola-es1 flite libttspico-utils rhvoice rhvoice-english wordnet-base diatheke sword-text-web
  sword-text-sparv sonic-pi-samples fluidsynth fluid-soundfont-gm"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=$(for p in $apt_packages; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  sources=/etc/apt/sources.list.d/debian-contrib-nonfree.sources
  if [ ! -f $sources ]; then
    echo "install.sh: enabling Debian's contrib and non-free components ($sources) for mbrola, pico and RHVoice"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $sudo tee $sources >/dev/null
  fi
  echo "install.sh: apt-get install" $missing
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
fi

installed_from=$(cd / && python3 -c 'import audiossl, pytest, os; print(os.path.dirname(os.path.dirname(audiossl.__file__)))' 2>/dev/null || true)
if [ "$installed_from" != "$root" ] || [ ! "$root/.installed" -nt "$root/setup.py" ]; then
  echo "install.sh: pip install -e $root[test]  (first time: torch is a large download)"
  python3 -m pip install -q -e "$root[test]"
  touch "$root/.installed"
fi
