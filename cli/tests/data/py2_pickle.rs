//! Writes pickles the way Python 2's cPickle (protocol 2) wrote the CIFAR python files:
//! str keys and strings as SHORT_BINSTRING/BINSTRING (bytes), every object memoised, and the
//! `data` entry a numpy uint8 array pickled as `_reconstruct(...)` + BUILD state.
//! `python3 -c "import pickle; pickle.load(open(f, 'rb'), encoding='latin1')"` reads these
//! files back as numpy arrays, like torchvision does.

pub enum Item {
    Str(&'static str),
    Ints(Vec<i64>),
    Strs(Vec<String>),
    /// A uint8 array of `rows` x `cols`.
    Array {
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    },
}

pub fn dict(entries: &[(&str, Item)]) -> Vec<u8> {
    let mut w = Writer {
        out: vec![0x80, 2],
        memo: 0,
    };
    w.out.push(b'}');
    w.put();
    w.out.push(b'(');
    for (key, value) in entries {
        w.str(key.as_bytes());
        match value {
            Item::Str(s) => w.str(s.as_bytes()),
            Item::Ints(v) => {
                w.out.push(b']');
                w.put();
                w.out.push(b'(');
                for &i in v {
                    w.int(i);
                }
                w.out.push(b'e');
            }
            Item::Strs(v) => {
                w.out.push(b']');
                w.put();
                w.out.push(b'(');
                for s in v {
                    w.str(s.as_bytes());
                }
                w.out.push(b'e');
            }
            Item::Array { rows, cols, bytes } => w.array(*rows, *cols, bytes),
        }
    }
    w.out.push(b'u');
    w.out.push(b'.');
    w.out
}

struct Writer {
    out: Vec<u8>,
    memo: u32,
}

impl Writer {
    /// BINPUT: cPickle memoises every object it writes.
    fn put(&mut self) {
        self.memo += 1;
        match u8::try_from(self.memo) {
            Ok(id) => self.out.extend([b'q', id]),
            Err(_) => {
                self.out.push(b'r');
                self.out.extend(self.memo.to_le_bytes());
            }
        }
    }

    fn str(&mut self, s: &[u8]) {
        if s.len() < 256 {
            self.out.extend([b'U', s.len() as u8]);
        } else {
            self.out.push(b'T');
            self.out.extend((s.len() as u32).to_le_bytes());
        }
        self.out.extend(s);
        self.put();
    }

    fn int(&mut self, i: i64) {
        match i {
            0..=255 => self.out.extend([b'K', i as u8]),
            256..=65535 => {
                self.out.push(b'M');
                self.out.extend((i as u16).to_le_bytes());
            }
            _ => {
                self.out.push(b'J');
                self.out.extend((i as i32).to_le_bytes());
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend(format!("{module}\n{name}\n").as_bytes());
        self.put();
    }

    /// numpy's `ndarray.__reduce__` under Python 2.
    fn array(&mut self, rows: usize, cols: usize, bytes: &[u8]) {
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.int(0);
        self.out.push(0x85); // TUPLE1: shape (0,)
        self.put();
        self.str(b"b");
        self.out.push(0x87); // TUPLE3
        self.put();
        self.out.push(b'R');
        self.put();
        // BUILD state: (1, (rows, cols), dtype('u1'), False, raw bytes)
        self.out.push(b'(');
        self.int(1);
        self.int(rows as i64);
        self.int(cols as i64);
        self.out.push(0x86); // TUPLE2
        self.put();
        self.global("numpy", "dtype");
        self.str(b"u1");
        self.int(0);
        self.int(1);
        self.out.push(0x87);
        self.put();
        self.out.push(b'R');
        self.put();
        self.out.push(b'(');
        self.int(3);
        self.str(b"|");
        self.out.extend(b"NNN");
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.out.push(b't');
        self.put();
        self.out.push(b'b');
        self.out.push(0x89); // NEWFALSE: not Fortran-ordered
        self.str(bytes);
        self.out.push(b't');
        self.put();
        self.out.push(b'b');
    }
}
