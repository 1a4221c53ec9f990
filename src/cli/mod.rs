//! The command-line front end: one file per command family. Only this code
//! prints for the user; the library returns values and typed errors.

pub mod bench;
pub mod check;
pub mod data;
pub mod error;
pub mod model;
pub mod parse;
pub mod train;

/// The kernel tuner's progress on one line of stderr, its notices on their own.
pub fn print_tune(event: &cimnet::gpu::tune::TuneEvent) {
    use cimnet::gpu::tune::TuneEvent;
    use std::io::Write;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match event {
        TuneEvent::Progress { .. } if !tty => {}
        TuneEvent::Progress { done, total, site, member } => {
            eprint!("\r\x1b[Ktuning kernels {done}/{total}: {site} {member}");
            let _ = std::io::stderr().flush();
        }
        TuneEvent::Finished { seconds } if !tty => eprintln!("tuning kernels: raced in {seconds:.1} s"),
        TuneEvent::Finished { seconds } => eprintln!("\r\x1b[Ktuning kernels: raced in {seconds:.1} s"),
        TuneEvent::Notice(text) if !tty => eprintln!("note: {text}"),
        TuneEvent::Notice(text) => eprintln!("\r\x1b[Knote: {text}"),
    }
}
