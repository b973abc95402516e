#!/bin/bash
set -e
cd /work/main
X=.venv/bin/xrd-strain
nice -n 5 $X generate --preset CNN2-PAPER --n-curves 200000 --test-curves 5000 --seed 9009 --shard-size 1000 --draws-per-profile 4 --workers 2 --out data/CNN2-PAPER --no-progress
nice -n 5 $X generate --preset CNN2-PAPER --n-curves 0 --test-curves 1000 --seed 7777 --out data/CNN2-PAPER-monitor --workers 2 --no-progress
echo GEN_DONE
