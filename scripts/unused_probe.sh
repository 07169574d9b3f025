#!/usr/bin/env bash
# A small probe of recordings this project never used for training, validation or test: Debian packages outside
# the source families (sound-icons: instrument snippets and a canary; psi-plus-sounds and eiskaltdcpp-sounds: chat
# and transfer alerts), unpacked without installing them into class folders (`audiomamba evaluate --format
# folder`), then the shipped tagger scored on them.  Needs apt-get (the package registry); no root.
#   DIR   where the probe goes (default runs/unused_probe); the figures: DIR/eval/summary.json, per_class.csv
#   AUDIOMAMBA  the command (default: audiomamba); CHECKPOINT the model (default: the shipped tagger)
set -euo pipefail
DIR=${DIR:-runs/unused_probe}
AUDIOMAMBA=${AUDIOMAMBA:-audiomamba}
CHECKPOINT=${CHECKPOINT:-src/audiomamba/resources/pretrained/audiomamba_micro_v2-bank53.safetensors}
debs=$DIR/debs
rm -rf "$DIR/data" "$DIR/root" && mkdir -p "$debs" "$DIR/data" "$DIR/root"
(cd "$debs" && apt-get download sound-icons psi-plus-sounds eiskaltdcpp-sounds >/dev/null)
for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done

# class folder <- files (relative to the unpacked root's usr/share); names tell the instrument (Czech for some)
put() {  # put CLASS FILE...
  local cls=$1; shift
  mkdir -p "$DIR/data/$cls"
  for f in "$@"; do cp "$DIR/root/usr/share/$f" "$DIR/data/$cls/$(basename "$(dirname "$f")")_$(basename "$f")"; done
}
SI=sounds/sound-icons
put "Harpsichord" $SI/cembalo-{1,2,3,6,10,11,12}.wav
put "Electric piano" $SI/electric-piano-3.wav
put "Acoustic guitar" $SI/guitar-{12,13}.wav
put "Piano" $SI/piano-3.wav
put "Trumpet" $SI/trumpet-{1,12}.wav
put "Cello" $SI/violoncello-7.wav
put "Marimba, xylophone" $SI/xylofon.wav
put "Bird" $SI/canary-long.wav
put "Beep, bleep" psi-plus/sound/{attention,chat1,chat2,email,ft_complete,ft_incoming,offline,online,reminder,send}.wav
put "Beep, bleep" eiskaltdcpp/sounds/{DownloadBegins,DownloadFinished,HubConnected,HubDisconnected,MsgType,MyNickInMainChat,PrivateMessage,UploadFinished}.wav

"$AUDIOMAMBA" evaluate --checkpoint "$CHECKPOINT" --data "$DIR/data" --format folder --split all --out "$DIR/eval" --device cpu "$@"
