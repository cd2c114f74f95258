#!/usr/bin/env python3
"""test-summary.py TESTLOG.json... - prints "N passed, N failed[, N skipped]"
over meson test logs; exits 1 when a test failed or none ran."""
import json
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                t = json.loads(line)
                res = t.get('result', '')
                if res in ('OK', 'EXPECTEDFAIL'):
                    passed += 1
                elif res == 'SKIP':
                    skipped += 1
                else:
                    failed += 1
                    print('failed: %s (%s)' % (t.get('name'), res))
    except FileNotFoundError:
        print('no test log at %s' % path)
        failed += 1
line = '%d passed, %d failed' % (passed, failed)
if skipped:
    line += ', %d skipped' % skipped
print(line)
sys.exit(1 if failed or passed == 0 else 0)
