#!/usr/bin/env bash
# Utterance-level fine-tuning (speakers, instruments, tags): a pretrained encoder fine-tuned as a
# whole against the same model trained from scratch, both evaluated on one test set.
# Called by egs/<corpus>/<task>/run.sh, from that directory.
#   0  data: the corpus's Kaldi data dirs under --data (--corpus speakers: prepare_tasks --tasks
#      speakers, dirs <data>/speakers/*; --corpus mini_music: prepare_mini_music, dirs <data>/16k/*)
#   1  fine-tuning of the pretrained encoder (audiossl.bin.finetune_utterance --pretrained)
#   2  the scratch control: same architecture and config, random weights (--scratch-like)
#   3  evaluation of both on --test-set (classification figures, or verification trials)
#   4  results: both rows and the command in a section of RESULTS.md
# The markers of stages 1-3 record their options and inputs (data dirs and checkpoints, by checksum): an
# evaluation is done again when they change; a fine-tuning trained on others makes the recipe fail, naming it.
set -euo pipefail

stage=0
stop_stage=100
corpus=speakers           # what stage 0 prepares: speakers | mini_music
size=full                 # corpus size: full | tiny (tests)
seed=0
nj=2                      # parallel synthesis jobs of stage 0
data=data                 # stage 0's data dir; the sets below are relative to it
audio=""                  # stage 0's audio dir (default: $AUDIOSSL_CORPORA/tasks or $AUDIOSSL_CORPORA/mini_music)
train_set=speakers/sid_train
valid_set=speakers/sid_dev
test_set=speakers/sid_test
label_table=utt2spk       # the data dirs' table of labels (utt2spk, utt2family, utt2tags, ...)
eval_task=classify        # classify (accuracy, or ROC-AUC/mAP for a multilabel head) | verify (EER, minDCF)
pretrained=""             # the pretrained checkpoint (required)
finetune_config=conf/finetune.yaml
finetune_args=""          # extra options for audiossl.bin.finetune_utterance, e.g. "--set trainer.max_updates=10"
eval_args=""              # extra options for audiossl.bin.eval_utterance classify|verify
ngpu=1                    # training processes per node, one per GPU (CPU processes without GPUs)
num_nodes=""              # nodes (cmd.sh: train_launch_mode slurm or hostfile); empty: 1, or every host
launcher=""               # a command prefix replacing that launch (e.g. echo: print the commands)
exp=exp
results=RESULTS.md
results_section="Fine-tuning"   # the section of $results this run's table goes in (others are kept)
results_command=""        # the command the section names (default: run.sh and this run's options)
help_message="Usage: $0 --pretrained <checkpoint> [options]   (run from egs/<corpus>/<task>)
  --stage N / --stop-stage M   run stages N..M (0 data, 1 pretrained, 2 scratch, 3 evaluation, 4 results)
  --pretrained FILE            the pretrained checkpoint fine-tuned (any family's)
  --corpus speakers|mini_music what stage 0 prepares ($corpus)
  --size full|tiny             its size ($size); --seed N ($seed); --nj N synthesis jobs ($nj)
  --data DIR                   stage 0's data dir ($data); --audio DIR its audio (default under \$AUDIOSSL_CORPORA)
  --train-set / --valid-set / --test-set   data dirs relative to --data ($train_set, $valid_set, $test_set)
  --label-table T              the table of labels ($label_table)
  --eval-task classify|verify  what stage 3 measures ($eval_task); verify scores <test-set>/trials
  --finetune-config F          YAML run config (utterance and trainer sections) ($finetune_config)
  --finetune-args '...'        extra options for python -m audiossl.bin.finetune_utterance
  --eval-args '...'            extra options for python -m audiossl.bin.eval_utterance classify|verify
  --ngpu N / --num-nodes M     training processes per node (one per GPU) and nodes, launched as
                               cmd.sh's train_launch_mode says (local, slurm, hostfile); M by default
                               1, in hostfile mode every host of cmd.sh's hostfile
  --launcher '...'             a prefix replacing that launch, e.g. 'echo' to print the commands (a dry run:
                               no training stage is marked done)
  --exp DIR                    experiment dir ($exp): <exp>/pretrained and <exp>/scratch
  --results FILE / --results-section TITLE   where the section goes ($results, '$results_section')
  --results-command '...'      the command the section names (default: run.sh with this run's options)"
command_line="$(basename "$(pwd)")/run.sh${*:+$(printf " %q" "$@")}"
. ./path.sh
. ./cmd.sh
. ./db.sh
. utils/parse_options.sh
[ -n "$pretrained" ] || { echo "$0: --pretrained is required" >&2; exit 1; }
case $corpus in speakers|mini_music) ;; *) echo "$0: --corpus must be speakers or mini_music, not '$corpus'" >&2; exit 1 ;; esac
case $eval_task in classify|verify) ;; *) echo "$0: --eval-task must be classify or verify, not '$eval_task'" >&2; exit 1 ;; esac
. utils/stages.sh
. utils/launch.sh
eval_name=eval_$(basename $test_set)

if run_stage 0; then
  # the seed draws the texts, voices and renderings: another one prepares again (an empty marker counts as done)
  settings="seed=$seed audio=${audio:-default}"
  done_with_settings $data/.done.${corpus}_$size "$settings" "stage 0: $size $corpus data in $data" || {
    if [ $corpus = speakers ]; then
      # the two mini_tts arguments are read by the pr task only
      python3 -m audiossl.bin.prepare_tasks --tasks speakers --size $size --seed $seed --num-workers $nj \
        $mini_tts $data/mini_tts ${audio:-$AUDIOSSL_CORPORA/tasks} $data
    else
      python3 -m audiossl.bin.prepare_mini_music --size $size --seed $seed --num-workers $nj \
        ${audio:-$AUDIOSSL_CORPORA/mini_music} $data
    fi
    echo "$settings" > $data/.done.${corpus}_$size
  }
fi

finetune() {  # <pretrained|scratch> <stage>
  local dir=$exp/$1 init=(--pretrained $pretrained) from settings
  [ $1 = scratch ] && init=(--scratch-like $pretrained)
  from=$(with_digests "${init[@]}")
  [ $1 = scratch ] && from=--scratch-like   # the architecture of --pretrained, not its weights
  settings=$(with_digests --config $finetune_config $finetune_args $from --label-table $label_table \
    --train-data $data/$train_set --valid-data $data/$valid_set)
  trained $dir "$settings" "stage $2: fine-tuning ($1) on $train_set by $label_table (log: $dir/train.log)" && return 0
  local check=()   # the set stage 3 classifies: its labels are checked before training (not a setting)
  [ $eval_task = classify ] && check=(--test-data $data/$test_set)
  launch $dir -m audiossl.bin.finetune_utterance --config $finetune_config $finetune_args "${init[@]}" \
    --label-table $label_table --train-data $data/$train_set --valid-data $data/$valid_set "${check[@]}" $dir
  mark_trained $dir/.done $dir/checkpoints/best.pt
}

if run_stage 1; then finetune pretrained 1; fi
if run_stage 2; then finetune scratch 2; fi

if run_stage 3; then
  for init in pretrained scratch; do
    out=$exp/$init/$eval_name
    # the files --eval-args names (--trials, --classes) by checksum, as the data dir: an edited one evaluates again
    settings="eval_task=$eval_task label_table=$label_table eval_args=$(with_digests $eval_args)"
    settings+=" checkpoint=$(file_digest $exp/$init/checkpoints/best.pt)"
    settings+=" $(with_digests $data/$test_set)"
    done_with_settings $out/.done "$settings" "stage 3: $eval_task, $init model on $test_set" && continue
    if [ $eval_task = classify ]; then
      python3 -m audiossl.bin.eval_utterance classify --label-table $label_table --no-progress $eval_args \
        $exp/$init/checkpoints/best.pt $data/$test_set $out
    else
      python3 -m audiossl.bin.eval_utterance verify --no-progress $eval_args \
        $exp/$init/checkpoints/best.pt $data/$test_set $out
    fi
    echo "$settings" > $out/.done
  done
fi

if run_stage 4; then
  echo "$(date +%T) stage 4: results -> $results"
  python3 -m audiossl.bin.eval_utterance results --pretrained-dir $exp/pretrained --scratch-dir $exp/scratch \
    --eval-name $eval_name --pretrained $pretrained --command "${results_command:-$command_line}" \
    --section "$results_section" $results
fi
echo "$(date +%T) $0: done (stages $stage..$stop_stage)"
