# pythreads: Python threads in one address space. Each thread allocates an 8 MiB bytearray
# (glibc malloc mmaps it from that thread) and touches every page; the main thread frees them
# all (munmap of memory other threads mapped). Captured for the KeyMM trace corpus.
import threading

bufs = []
lock = threading.Lock()


def work(i):
    b = bytearray(8 << 20)
    for j in range(0, len(b), 4096):
        b[j] = i
    with lock:
        bufs.append(b)


threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
del bufs[:]
