#!/usr/bin/env bash
# A small probe of recordings this project never used for training, validation or test: Debian packages outside
# the source families (sound-icons: instrument snippets and a canary; psi-plus-sounds and eiskaltdcpp-sounds: chat
# and transfer alerts; freedink-data and warmux-data: game sounds; ktuberling-data: words read in six languages),
# unpacked without installing them into class folders (`audiomamba evaluate --format folder`), then the shipped
# tagger scored on them.  Labels come from the file names.  Needs apt-get (the package registry); no root.
#   DIR   where the probe goes (default runs/unused_probe); the figures: DIR/eval/summary.json, per_class.csv
#   AUDIOMAMBA  the command (default: audiomamba); CHECKPOINT the model (default: the shipped tagger)
set -euo pipefail
DIR=${DIR:-runs/unused_probe}
AUDIOMAMBA=${AUDIOMAMBA:-audiomamba}
CHECKPOINT=${CHECKPOINT:-src/audiomamba/resources/pretrained/audiomamba_micro_v2-bank53.safetensors}
debs=$DIR/debs
rm -rf "$DIR/data" "$DIR/root" && mkdir -p "$debs" "$DIR/data" "$DIR/root"
(cd "$debs" && apt-get download sound-icons psi-plus-sounds eiskaltdcpp-sounds freedink-data warmux-data \
  ktuberling-data >/dev/null)
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

FD=games/dink/dink/Sound
put "Bird" $FD/bird1.wav
put "Grunt" $FD/grunt{1,2}.wav
put "Whack, thwack" $FD/punch.wav
put "Arrow" $FD/arrow.wav
put "Whoosh, swoosh, swish" $FD/swing.wav
WX=games/warmux/sound/default
put "Grunt" $WX/voices/injured_{light,medium}{1,2,3,4,5}.ogg
put "Gunshot, gunfire" $WX/weapons/{gun,m16,shotgun}.ogg
put "Whack, thwack" $WX/weapons/baseball.ogg
put "Beep, bleep" $WX/weapons/mine_beep.ogg
KT=ktuberling/sounds
put "Speech" $KT/{en,de,ru,uk,el}/{ball,flower,umbrella}.ogg $KT/fr/{chapeau,cravate,bouche}.wav

"$AUDIOMAMBA" evaluate --checkpoint "$CHECKPOINT" --data "$DIR/data" --format folder --split all --out "$DIR/eval" --device cpu "$@"
