#![no_std]
#![no_main]
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod histogram;
mod noise;
mod on_cpu;
mod process;
mod sched;
mod shared;
mod snapshot;
mod task;
mod user_stack;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
