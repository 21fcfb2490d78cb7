//! The C functions of `csrc/dist.cpp`. Without Gloo at build time (cfg `tchzoo_gloo` unset) every call says how
//! to get a build that has it.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Duration;

use tch::Tensor;

#[cfg(tchzoo_gloo)]
extern "C" {
    fn tz_free_string(s: *mut c_char);
    fn tz_dist_init(
        backend: *const c_char,
        addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn tz_dist_free(group: *mut c_void);
    fn tz_dist_allreduce(
        group: *mut c_void,
        ts: *const *mut c_void,
        n: c_int,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn tz_dist_broadcast(
        group: *mut c_void,
        ts: *const *mut c_void,
        n: c_int,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn tz_dist_barrier(group: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn tz_dist_store_set(group: *mut c_void, key: *const c_char, value: *const c_char, err: *mut *mut c_char) -> c_int;
    fn tz_dist_store_get(group: *mut c_void, key: *const c_char, err: *mut *mut c_char) -> *mut c_char;
    fn tz_dist_allreduce_autograd(group: *mut c_void, t: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
    fn tz_nccl_version() -> c_int;
}

#[cfg(tchzoo_gloo)]
fn take_string(s: *mut c_char) -> String {
    if s.is_null() {
        return "unknown error".into();
    }
    // SAFETY: a NUL-terminated string malloc'd by the shim, freed once here.
    let out = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { tz_free_string(s) };
    out
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("'{s}' contains a NUL byte"))
}

/// An owned c10d group (store and backend).
pub struct Handle(*mut c_void);

// SAFETY: c10d's process groups are used from any thread (PyTorch's DDP calls them from autograd threads); this
// crate only calls them from the training thread.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        #[cfg(tchzoo_gloo)]
        // SAFETY: made by tz_dist_init, freed once.
        unsafe {
            tz_dist_free(self.0)
        }
    }
}

#[cfg(not(tchzoo_gloo))]
const NO_GLOO: &str = "this tchzoo was built without Gloo's headers, so it cannot train distributed; install them \
                       (Debian: apt-get install libgloo-dev, which scripts/setup does) and rebuild";

#[cfg(tchzoo_gloo)]
fn ptrs(ts: &[Tensor]) -> Vec<*mut c_void> {
    ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

#[cfg(tchzoo_gloo)]
fn status(rc: c_int, err: *mut c_char) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(take_string(err))
    }
}

impl Handle {
    pub fn init(
        backend: &str,
        addr: &str,
        port: u16,
        rank: usize,
        world: usize,
        timeout: Duration,
    ) -> Result<Handle, String> {
        let (backend, addr) = (cstring(backend)?, cstring(addr)?);
        #[cfg(tchzoo_gloo)]
        {
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid C strings for the call; err receives a malloc'd message on failure.
            let h = unsafe {
                tz_dist_init(
                    backend.as_ptr(),
                    addr.as_ptr(),
                    port as c_int,
                    rank as c_int,
                    world as c_int,
                    timeout.as_millis() as i64,
                    &mut err,
                )
            };
            if h.is_null() {
                Err(take_string(err))
            } else {
                Ok(Handle(h))
            }
        }
        #[cfg(not(tchzoo_gloo))]
        {
            let _ = (backend, addr, port, rank, world, timeout);
            Err(NO_GLOO.into())
        }
    }

    pub fn all_reduce(&self, ts: &[Tensor], op: i32) -> Result<(), String> {
        #[cfg(tchzoo_gloo)]
        {
            let p = ptrs(ts);
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: the tensors outlive the call, which waits for the collective to finish.
            status(unsafe { tz_dist_allreduce(self.0, p.as_ptr(), p.len() as c_int, op, &mut err) }, err)
        }
        #[cfg(not(tchzoo_gloo))]
        {
            let _ = (ts, op);
            Err(NO_GLOO.into())
        }
    }

    pub fn broadcast(&self, ts: &[Tensor], root: i32) -> Result<(), String> {
        #[cfg(tchzoo_gloo)]
        {
            let p = ptrs(ts);
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: as all_reduce.
            status(unsafe { tz_dist_broadcast(self.0, p.as_ptr(), p.len() as c_int, root, &mut err) }, err)
        }
        #[cfg(not(tchzoo_gloo))]
        {
            let _ = (ts, root);
            Err(NO_GLOO.into())
        }
    }

    pub fn barrier(&self) -> Result<(), String> {
        #[cfg(tchzoo_gloo)]
        {
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: a live group.
            status(unsafe { tz_dist_barrier(self.0, &mut err) }, err)
        }
        #[cfg(not(tchzoo_gloo))]
        Err(NO_GLOO.into())
    }

    pub fn store_set(&self, key: &str, value: &str) -> Result<(), String> {
        let (key, value) = (cstring(key)?, cstring(value)?);
        #[cfg(tchzoo_gloo)]
        {
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid C strings for the call.
            status(unsafe { tz_dist_store_set(self.0, key.as_ptr(), value.as_ptr(), &mut err) }, err)
        }
        #[cfg(not(tchzoo_gloo))]
        {
            let _ = (key, value);
            Err(NO_GLOO.into())
        }
    }

    pub fn store_get(&self, key: &str) -> Result<String, String> {
        let key = cstring(key)?;
        #[cfg(tchzoo_gloo)]
        {
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: a valid C string; the result is malloc'd by the shim.
            let v = unsafe { tz_dist_store_get(self.0, key.as_ptr(), &mut err) };
            if v.is_null() {
                Err(take_string(err))
            } else {
                Ok(take_string(v))
            }
        }
        #[cfg(not(tchzoo_gloo))]
        {
            let _ = key;
            Err(NO_GLOO.into())
        }
    }

    pub fn all_reduce_autograd(&self, t: &Tensor) -> Result<Tensor, String> {
        #[cfg(tchzoo_gloo)]
        {
            let mut err: *mut c_char = std::ptr::null_mut();
            // SAFETY: the shim returns a new heap `torch::Tensor*`, which Tensor::from_ptr takes ownership of.
            let out = unsafe { tz_dist_allreduce_autograd(self.0, t.as_ptr() as *mut c_void, &mut err) };
            if out.is_null() {
                Err(take_string(err))
            } else {
                Ok(unsafe { Tensor::from_ptr(out as *mut _) })
            }
        }
        #[cfg(not(tchzoo_gloo))]
        {
            let _ = t;
            Err(NO_GLOO.into())
        }
    }
}

/// NCCL's version number, when this binary has NCCL.
pub fn nccl_version() -> Option<i32> {
    #[cfg(tchzoo_gloo)]
    {
        // SAFETY: no arguments; reads the version of the NCCL that libtorch_cuda loaded.
        let v = unsafe { tz_nccl_version() };
        (v > 0).then_some(v)
    }
    #[cfg(not(tchzoo_gloo))]
    None
}
