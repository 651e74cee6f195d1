# Site environment, sourced by every recipe (egs/*/*/path.sh links here).
AUDIOSSL_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export AUDIOSSL_ROOT
export PYTHONPATH=$AUDIOSSL_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export LC_ALL=C
# Two cores here: one intra-op thread per parallel job avoids oversubscription in feature jobs;
# training stages set their own thread count.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
