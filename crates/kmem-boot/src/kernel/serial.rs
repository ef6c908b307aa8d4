//! The console: COM1 (0x3f8), 16550 UART, polled, one line discipline lock so that CPUs and
//! interrupt handlers print whole messages (Linux: `drivers/tty/serial/8250`, the printk
//! console lock).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::kernel::arch::{cli, inb, outb, rflags, sti, RFLAGS_IF};

const COM1: u16 = 0x3f8;

static LOCK: AtomicBool = AtomicBool::new(false);

/// Programs COM1: 115200 8N1, FIFO on, no interrupts.
pub fn init() {
    // SAFETY: COM1's registers; nothing else drives the UART.
    unsafe {
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x80);
        outb(COM1, 0x01);
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03);
        outb(COM1 + 2, 0xc7);
        outb(COM1 + 4, 0x03);
    }
}

fn put(b: u8) {
    // SAFETY: COM1's line status and data registers.
    unsafe {
        while inb(COM1 + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}

/// The raw UART as a `fmt::Write` (no lock).
pub struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

/// Runs `f` with the console locked and interrupts off on this CPU.
pub fn with_console<R>(f: impl FnOnce(&mut Uart) -> R) -> R {
    let was_on = rflags() & RFLAGS_IF != 0;
    cli();
    while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
    let r = f(&mut Uart);
    LOCK.store(false, Ordering::Release);
    if was_on {
        sti();
    }
    r
}

/// Prints without the lock: the panic path, which may have interrupted a holder.
pub fn emergency(args: fmt::Arguments<'_>) {
    let _ = Uart.write_fmt(args);
}

/// `print!` to the console.
#[macro_export]
macro_rules! kprint {
    ($($t:tt)*) => {
        $crate::kernel::serial::with_console(|u| { let _ = core::fmt::Write::write_fmt(u, format_args!($($t)*)); })
    };
}

/// `println!` to the console.
#[macro_export]
macro_rules! kprintln {
    ($($t:tt)*) => {
        $crate::kernel::serial::with_console(|u| {
            let _ = core::fmt::Write::write_fmt(u, format_args!($($t)*));
            let _ = core::fmt::Write::write_str(u, "\n");
        })
    };
}
