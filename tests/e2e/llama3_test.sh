#!/usr/bin/env bash
# Upstream's current bases from the command line (Llama 3 issue), with Meta's Llama 3.2
# tokenizer.json and Mistral's v3 SentencePiece model (tools/fixture-wheels.txt):
#  - tokenizer encode / corpus build / inspect take a tokenizer.json or its directory;
#  - a tiny model with Llama 3's vocabulary trains on that corpus (pretrain, then instruct with
#    the llama3_mistral branch's prompt template), records the tokenizer's special ids and the
#    template in config.json, and `generate` answers with the tokenizer.json in that template;
#  - a template other than the corpus's / model's is refused unless allowed;
#  - data.upstream_compat needs a corpus built with --upstream-compat, and trains on one;
#  - a tokenizer larger than the model's vocabulary, a tokenizer.json we do not support, and
#    invalid UTF-8 notes are refused with one line naming what.
# Usage: llama3_test.sh ASCLEPIUS_BIN SOURCE_DIR PYTHON
set -uo pipefail
bin=$1 src=$2 py=$3
source "$(dirname "$0")/lib.sh"
fx=$(dirname "$(dirname "$py")")/share/asclepius-fixtures
l3=$fx/llama3.2
[[ -f $l3/tokenizer.json && -f $fx/mistral-v3/tokenizer.model ]] || { echo "fixtures missing: run tools/setup.sh"; exit 1; }

"$bin" synth-notes --count 40 --seed 9 --questions-per-note 1 --out "$tmp/sn" >/dev/null
check "tokenizer encode takes a tokenizer.json directory" \
  bash -c "[[ \$('$bin' tokenizer encode --model '$l3' 'Hello world') == '128000 9906 1917 ' ]]"
check "tokenizer encode: Mistral v3's [INST] is its control id" \
  bash -c "[[ \$('$bin' tokenizer encode --model '$fx/mistral-v3/tokenizer.model' '[INST]') == '1 3 ' ]]"
"$bin" corpus build --input "$tmp/sn/train.csv" --tokenizer "$l3" --out "$tmp/pre.h5" >/dev/null
"$bin" corpus inspect "$tmp/pre.h5" --tokenizer "$l3/tokenizer.json" >"$tmp/inspect" 2>&1
check "corpus inspect: Llama 3 vocabulary" grep -q "vocab_size 128257" "$tmp/inspect"
check "corpus inspect: Llama 3 special ids" grep -q "special ids: bos 128000 eos 128001 pad 128000" "$tmp/inspect"
"$bin" corpus build --input "$tmp/sn/train.csv" --tokenizer "$l3" --stage instruct --max-len 1024 \
  --prompt-template asclepius-space --out "$tmp/ins.h5" >/dev/null
"$bin" corpus build --input "$tmp/sn/train.csv" --tokenizer "$l3" --stage instruct --max-len 1024 \
  --prompt-template asclepius-space --upstream-compat --out "$tmp/ins_compat.h5" >/dev/null
check "corpus inspect: the template and compat are recorded" \
  bash -c "'$bin' corpus inspect '$tmp/ins_compat.h5' | grep -q 'prompt_template asclepius-space' && '$bin' corpus inspect '$tmp/ins_compat.h5' | grep -q 'upstream_compat true'"

tiny="$src/recipes/demo/tiny.yaml"
common=(model.vocab_size=128257 model.max_position_embeddings=1024 data.tokenizer="$l3"
        train.global_batch_size=4 train.micro_batch_size=2 logging.tensorboard=false)
"$bin" train "$tiny" "${common[@]}" data.corpus="$tmp/pre.h5" data.seq_len=128 train.max_steps=3 \
  checkpoint.dir="$tmp/stage1" >"$tmp/s1.log" 2>&1
check "pretrain on the Llama 3 corpus" grep -q '"bos_token_id": 128000' "$tmp/stage1/step-0000003/config.json"
ins=(model.preset= model.init_from="$tmp/stage1" data.tokenizer="$l3" train.stage=instruct
     data.seq_len=1024 train.global_batch_size=4 train.micro_batch_size=2 train.max_steps=2
     logging.tensorboard=false)
"$bin" train "$tiny" "${ins[@]}" data.corpus="$tmp/ins.h5" checkpoint.dir="$tmp/stage2" >"$tmp/s2.log" 2>&1
check "instruct: config.json records the template" \
  "$py" -c "import json,sys; c=json.load(open('$tmp/stage2/step-0000002/config.json')); t=c['asclepius_prompt_template']; sys.exit(not (t['name']=='asclepius-space' and t['text'].endswith('[Instruction End] \n')))"
expect_error "instruct: another template than the corpus's" "was built with asclepius-space" \
  "$bin" train "$tiny" "${ins[@]}" data.corpus="$tmp/ins.h5" data.prompt_template=asclepius checkpoint.dir="$tmp/x1"
"$bin" train "$tiny" "${ins[@]}" data.corpus="$tmp/ins.h5" data.prompt_template=asclepius \
  data.allow_prompt_mismatch=true train.max_steps=1 checkpoint.dir="$tmp/x2" >/dev/null 2>&1
check "instruct: a mismatch trains when allowed" test -f "$tmp/x2/step-0000001/config.json"
expect_error "upstream_compat on a corpus built without it" "built without --upstream-compat" \
  "$bin" train "$tiny" "${ins[@]}" data.corpus="$tmp/ins.h5" data.upstream_compat=true checkpoint.dir="$tmp/x3"
expect_error "a compat corpus without data.upstream_compat" "built with --upstream-compat" \
  "$bin" train "$tiny" "${ins[@]}" data.corpus="$tmp/ins_compat.h5" checkpoint.dir="$tmp/x4"
"$bin" train "$tiny" "${ins[@]}" data.corpus="$tmp/ins_compat.h5" data.upstream_compat=true \
  checkpoint.dir="$tmp/compat" >"$tmp/compat.log" 2>&1
check "upstream_compat trains (BOS hidden)" test -f "$tmp/compat/step-0000002/config.json"

note="$tmp/note.txt"; printf 'Patient admitted with chest pain. Troponin elevated.\n' >"$note"
"$bin" generate --model "$tmp/stage2" --tokenizer "$l3" --note "$note" --question "Why admitted?" \
  --max-new-tokens 4 >"$tmp/gen.out" 2>"$tmp/gen.err"
check "generate with tokenizer.json in the model's template" test -s "$tmp/gen.out"
expect_error "generate: another template than the model's" "instruction-tuned with: asclepius-space" \
  "$bin" generate --model "$tmp/stage2" --tokenizer "$l3" --note "$note" --question "Why?" \
  --max-new-tokens 2 --prompt-template asclepius
check "generate: --allow-prompt-mismatch" "$bin" generate --model "$tmp/stage2" --tokenizer "$l3" \
  --note "$note" --question "Why?" --max-new-tokens 2 --prompt-template asclepius --allow-prompt-mismatch

expect_error "a tokenizer larger than the model" "128257-token vocabulary but the model has 256" \
  "$bin" train "$tiny" data.corpus="$tmp/pre.h5" data.tokenizer="$l3" data.seq_len=64 checkpoint.dir="$tmp/x5"
"$py" - "$l3/tokenizer.json" "$tmp/wp" <<'PY'
import json, os, sys
j = json.load(open(sys.argv[1])); j["model"]["type"] = "WordPiece"
os.makedirs(sys.argv[2]); json.dump(j, open(os.path.join(sys.argv[2], "tokenizer.json"), "w"))
PY
expect_error "a WordPiece tokenizer.json" "model type WordPiece is not supported" \
  "$bin" corpus build --input "$tmp/sn/train.csv" --tokenizer "$tmp/wp/tokenizer.json" --out "$tmp/x.h5"
printf 'note,question,answer\n"bad \xff byte",q,a\n' >"$tmp/bad.csv"
expect_error "invalid UTF-8 is named (at ingest)" "invalid UTF-8 in note" \
  "$bin" corpus build --input "$tmp/bad.csv" --tokenizer "$l3" --out "$tmp/x2.h5"
expect_error "an unknown template name" "did you mean asclepius-space?" \
  "$bin" corpus build --input "$tmp/sn/train.csv" --tokenizer "$l3" --stage instruct --prompt-template asclepius-spac --out "$tmp/x3.h5"

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
