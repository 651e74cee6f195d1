# Where corpora live at this site, sourced by every recipe (egs/*/*/db.sh links here).
# The defaults work on a fresh machine; point them elsewhere to share corpora.
AUDIOSSL_CORPORA=${AUDIOSSL_CORPORA:-$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)/corpora}
mini_tts=$AUDIOSSL_CORPORA/mini_tts    # synthesized on this machine by the recipe's stage 0
