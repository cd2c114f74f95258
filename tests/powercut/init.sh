#!/bin/busybox sh
# init.sh - PID 1 of the power-cut guest (see run_powercut.py). Lines for
# the host start with "YY " on the serial console.
#   yy.mode=run:   STOW instances yy.from .. yy.from+yy.count-1 with
#                  yy.clients clients, "YY ACK i" once a 2xx names it; the
#                  host cuts the power meanwhile.
#   yy.mode=check: start the server on what the disk kept (its recovery
#                  runs), "YY HAVE i sha256" / "YY MISS i" for instances
#                  0 .. yy.upto-1 (WADO-URI, stored syntax), the QIDO list
#                  of all instances, then a clean stop and power-off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/yy
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /data /run
for m in $(cat /lib/modules/order); do
    insmod /lib/modules/$m.ko || echo "YY insmod $m failed"
done
for kv in $(cat /proc/cmdline); do
    case $kv in
    yy.*=*) k=${kv%%=*}; k=${k#yy.}; eval "Y_$k=${kv#*=}" ;;
    esac
done
ip link set lo up
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ "$Y_fs" = ext4nj ]; then
    # ext4 without a journal is checked at every boot after a crash
    /sbin/e2fsck -fy /dev/vda > /tmp/fsck.log 2>&1
    echo "YY fsck $?"
    sed 's/^/YY FSCK /' /tmp/fsck.log
fi
case $Y_fs in xfs) t=xfs ;; *) t=ext4 ;; esac
if ! mount -t $t /dev/vda /data; then
    echo "YY mount failed"
    poweroff -f
fi
of=true
[ "$Y_commit" = two-flush ] && of=false
/yy/yingyun serve --listen 127.0.0.1:8080 --data /data/yy --access_log false \
    --log-level info --one_flush $of > /tmp/server.log 2>&1 &
SP=$!
i=0
until wget -q -O /dev/null http://127.0.0.1:8080/status; do
    sleep 0.2
    i=$((i + 1))
    if [ $i -gt 600 ]; then
        sed 's/^/YY LOG /' /tmp/server.log
        echo "YY server not up"
        poweroff -f
    fi
done
echo "YY server up"
grep -q "one flush per new object" /tmp/server.log && echo "YY one-flush"
grep -q "two flushes per new object" /tmp/server.log && echo "YY two-flush"
grep -q "folders made durable with syncfs" /tmp/server.log && echo "YY syncfs"
echo "YY store-checked"
URL=http://127.0.0.1:8080

client() {
    i=$((Y_from + $1))
    end=$((Y_from + Y_count))
    while [ $i -lt $end ]; do
        f=$(printf /req/%05d.mp $i)
        if curl -sf -o /tmp/r$1 --data-binary @$f -H 'Accept: application/dicom+json' \
            -H 'Content-Type: multipart/related; type="application/dicom"; boundary=yyb' \
            $URL/dicomweb/studies && grep -q 00081199 /tmp/r$1; then
            echo "YY ACK $i"
        else
            echo "YY NAK $i"
        fi
        i=$((i + Y_clients))
    done
}

if [ "$Y_mode" = run ]; then
    pids=""
    k=0
    while [ $k -lt $Y_clients ]; do
        client $k &
        pids="$pids $!"
        k=$((k + 1))
    done
    wait $pids
    echo "YY run-done"
    while true; do sleep 10; done
fi

while read i st se sop; do
    [ $i -lt $Y_upto ] || break
    q="requestType=WADO&studyUID=$st&seriesUID=$se&objectUID=$sop"
    q="$q&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.1"
    if wget -q -O /tmp/o "$URL/wado?$q"; then
        echo "YY HAVE $i $(sha256sum < /tmp/o | cut -d' ' -f1)"
    else
        echo "YY MISS $i"
    fi
done < /req/list
wget -q -O /tmp/q "$URL/dicomweb/instances?limit=100000&includefield=00080018"
sops=$(grep -o '"00080018":{"vr":"UI","Value":\["[0-9.]*"' /tmp/q | sed 's/.*\["//; s/"$//')
echo "YY QIDO $(echo $sops)"
echo "YY tmpfiles $(ls /data/yy/tmp 2>/dev/null | wc -l)"
kill -TERM $SP
wait $SP
echo "YY server exit $?"
grep -i -E "again|CRC|damaged|error|warn|recover" /tmp/server.log | sed 's/^/YY LOG /'
sync
umount /data
echo "YY check-done"
poweroff -f
