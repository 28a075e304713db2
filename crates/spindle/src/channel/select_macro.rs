//! The [`select!`](crate::select) macro: crossbeam-channel's syntax over spindle's
//! selection engine (`channel/select.rs`).
//!
//! The macro parses its arms into a normal form (`__select_parse!`), then declares one
//! typed operation per arm on the stack (`__select_build!`, one expansion per arm: each
//! expansion's `__op` is a distinct variable thanks to macro hygiene), hands them
//! type-erased to the engine, and runs the body of the arm whose operation holds a result.
//! Nothing is allocated.

/// Waits on several channel operations and carries out exactly one of them.
///
/// ```text
/// select! {
///     recv(receiver) -> pattern => body,        // pattern: Result<T, RecvError>
///     send(sender, message) -> pattern => body, // pattern: Result<(), SendError<T>>
///     default => body,                          // at most one default arm, either
///     default(timeout) => body,                 //   form (timeout: a Duration)
/// }
/// ```
///
/// If several operations are ready, one of them is chosen uniformly at random. If none is,
/// the calling thread waits (a green thread parks only itself; a kernel thread blocks) until
/// one is and carries it out; with `default`, it runs the default body at once instead;
/// with `default(timeout)`, after `timeout`. An operation on a disconnected channel is
/// ready: `recv` gives `Err(RecvError)`, `send` gives `Err(SendError(message))` back. The
/// same channel may appear in several arms. Arms whose body is a block need no comma.
///
/// Receivers and senders are taken by reference (`recv(rx)` does not move `rx`). The
/// message expressions of `send` arms are evaluated once, in order, before selecting (as
/// in Go; crossbeam evaluates only the selected one's), and the messages of arms that were
/// not selected are dropped: see [`Select`](crate::channel::Select) for why a selection
/// carries its messages. `break`, `continue` and `return` in bodies act on
/// the enclosing function and loops, as with `match`.
///
/// ```
/// use std::time::Duration;
/// use spindle::channel::{bounded, unbounded};
///
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let (tx1, rx1) = unbounded();
///     let (tx2, rx2) = bounded(0);
///     let (done_tx, done_rx) = bounded::<()>(0);
///     spindle::spawn(move || {
///         // A rendezvous: completes only when the select below takes the message.
///         tx2.send("two").unwrap();
///         drop(done_tx);
///     });
///     // Blocks until the spawned thread offers its message.
///     let got = spindle::select! {
///         recv(rx1) -> msg => msg.map(|_: &str| "one"),
///         recv(rx2) -> msg => msg,
///     };
///     assert_eq!(got, Ok("two"));
///     // The sender is gone once the thread ends: its arm is ready with an error.
///     spindle::select! {
///         recv(done_rx) -> msg => assert!(msg.is_err()),
///     }
///     // Nothing is ready: the default arm runs at once.
///     let idle = spindle::select! {
///         recv(rx1) -> _ => false,
///         default => true,
///     };
///     assert!(idle);
///     // Sending: a buffered channel with room is ready.
///     spindle::select! {
///         send(tx1, "x") -> res => assert_eq!(res, Ok(())),
///         default(Duration::from_millis(10)) => unreachable!("tx1 has room"),
///     }
///     assert_eq!(rx1.try_recv(), Ok("x"));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_parse!(() () $($tokens)*)
    };
}

/// `select!`'s parser: moves each arm into the first group in a normal form
/// (`(recv (r) (pat) (body))`, `(send (s) (msg) (pat) (body))`) and the default arm into
/// the second (`(now (body))`, `(after (timeout) (body))`).
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // All arms parsed.
    (($($arms:tt)*) $default:tt) => {
        $crate::__select_build!(() ($($arms)*) $default)
    };

    // recv
    (($($arms:tt)*) $default:tt
        recv($r:expr) -> $p:pat => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* (recv ($r) ($p) ($body))) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt
        recv($r:expr) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* (recv ($r) ($p) ($body))) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt
        recv($r:expr) -> $p:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* (recv ($r) ($p) ($body))) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt
        recv($r:expr) -> $p:pat => $body:expr) => {
        $crate::__select_parse!(($($arms)* (recv ($r) ($p) ($body))) $default)
    };

    // send
    (($($arms:tt)*) $default:tt
        send($s:expr, $m:expr) -> $p:pat => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* (send ($s) ($m) ($p) ($body))) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt
        send($s:expr, $m:expr) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* (send ($s) ($m) ($p) ($body))) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt
        send($s:expr, $m:expr) -> $p:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* (send ($s) ($m) ($p) ($body))) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt
        send($s:expr, $m:expr) -> $p:pat => $body:expr) => {
        $crate::__select_parse!(($($arms)* (send ($s) ($m) ($p) ($body))) $default)
    };

    // default
    ($arms:tt () default => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($arms (now ($body)) $($rest)*)
    };
    ($arms:tt () default => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($arms (now ($body)) $($rest)*)
    };
    ($arms:tt () default => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($arms (now ($body)) $($rest)*)
    };
    ($arms:tt () default => $body:expr) => {
        $crate::__select_parse!($arms (now ($body)))
    };

    // default(timeout)
    ($arms:tt () default($t:expr) => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($arms (after ($t) ($body)) $($rest)*)
    };
    ($arms:tt () default($t:expr) => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($arms (after ($t) ($body)) $($rest)*)
    };
    ($arms:tt () default($t:expr) => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($arms (after ($t) ($body)) $($rest)*)
    };
    ($arms:tt () default($t:expr) => $body:expr) => {
        $crate::__select_parse!($arms (after ($t) ($body)))
    };

    // Errors.
    ($arms:tt ($($default:tt)+) default $($rest:tt)*) => {
        ::core::compile_error!("`select!` takes at most one `default` arm")
    };
    ($arms:tt $default:tt $($rest:tt)+) => {
        ::core::compile_error!(::core::concat!(
            "`select!` expects arms `recv(r) -> pat => body`, `send(s, msg) -> pat => body`, ",
            "`default => body` or `default(timeout) => body`; cannot parse `",
            ::core::stringify!($($rest)+),
            "`"
        ))
    };
}

/// `select!`'s code generator: one expansion per arm declares that arm's operation (each
/// expansion's `__op` is its own variable), the last one selects and dispatches.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_build {
    // Declare the next operation.
    (($($done:tt)*) ((recv ($r:expr) ($p:tt) ($body:tt)) $($arms:tt)*) $default:tt) => {{
        let __receiver: &$crate::channel::Receiver<_> = &$r;
        let mut __op = $crate::channel::__private::RecvOp::new(__receiver);
        $crate::__select_build!(($($done)* (__op ($p) ($body))) ($($arms)*) $default)
    }};
    (($($done:tt)*) ((send ($s:expr) ($m:expr) ($p:tt) ($body:tt)) $($arms:tt)*) $default:tt) => {{
        let __sender: &$crate::channel::Sender<_> = &$s;
        let mut __op = $crate::channel::__private::SendOp::new(__sender, $m);
        $crate::__select_build!(($($done)* (__op ($p) ($body))) ($($arms)*) $default)
    }};

    // Every operation declared: how long to wait, and what to do if none is carried out.
    ($done:tt () ()) => {
        $crate::__select_build!(@run $done
            ($crate::channel::__private::Timeout::Never)
            (::core::unreachable!("`select!` without a default arm carried nothing out")))
    };
    ($done:tt () (now ($body:tt))) => {
        $crate::__select_build!(@run $done
            ($crate::channel::__private::Timeout::Now)
            ($body))
    };
    ($done:tt () (after ($t:expr) ($body:tt))) => {
        $crate::__select_build!(@run $done
            ($crate::channel::__private::Timeout::After($t))
            ($body))
    };

    // Select, then run the body of the arm whose operation was carried out.
    (@run ($(($op:ident ($p:tt) ($body:tt)))*) ($timeout:expr) ($($default:tt)*)) => {{
        $crate::channel::__private::select(&mut [$($op.op()),*], $timeout);
        $(
            if let ::core::option::Option::Some(__result) = $op.take_result() {
                match __result {
                    $p => $body,
                }
            } else
        )*
        {
            $($default)*
        }
    }};
}
