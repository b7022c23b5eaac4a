//! Typed methods: a name pair and the argument and result types.

use std::fmt;
use std::marker::PhantomData;

use crate::wire::MAX_NAME;

/// A remote method: the object and method names, and the types of its
/// arguments `A` and result `R`. Declare it once, in a module both sides
/// use; servers [`register`](crate::Rpc::register) a handler for it and
/// callers [`call`](crate::Rpc::call) it, with no strings at either place.
///
/// Several arguments travel as a tuple. Both types go through serde and
/// postcard, so `A` and `R` must mean the same on both sides (postcard is
/// not self-describing: a mismatch is a
/// [`BadPayload`](crate::RemoteErrorKind::BadPayload) error or, for types
/// whose encodings happen to agree, a wrong value).
///
/// ```
/// use weft_rpc::Method;
///
/// pub const ADD: Method<(i32, i32), i32> = Method::new("calc", "add");
/// pub const LOG: Method<String, ()> = Method::new("log", "line");
/// assert_eq!((ADD.object(), ADD.method()), ("calc", "add"));
/// ```
pub struct Method<A, R> {
    object: &'static str,
    method: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Method<A, R> {
    /// A method named `method` on the object named `object`.
    ///
    /// # Panics
    ///
    /// If a name is longer than [`MAX_NAME`] bytes; in a `const` that is
    /// a compile-time error.
    pub const fn new(object: &'static str, method: &'static str) -> Method<A, R> {
        assert!(
            object.len() <= MAX_NAME && method.len() <= MAX_NAME,
            "RPC object and method names are at most 255 bytes"
        );
        Method {
            object,
            method,
            _types: PhantomData,
        }
    }

    /// The object's name.
    pub const fn object(&self) -> &'static str {
        self.object
    }

    /// The method's name.
    pub const fn method(&self) -> &'static str {
        self.method
    }
}

impl<A, R> Clone for Method<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Method<A, R> {}

impl<A, R> fmt::Debug for Method<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Method({}.{}: {} -> {})",
            self.object,
            self.method,
            std::any::type_name::<A>(),
            std::any::type_name::<R>()
        )
    }
}
