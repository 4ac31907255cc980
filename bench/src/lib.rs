//! ironflow benchmarks: whole-engine runs (`engine`) and the frames they
//! use, side-by-side runs against other dataplanes (`system`) and
//! against stock ovn-controller (`control`); the criterion
//! micro-benchmarks live in `benches/`. Never needed at run time.

pub mod control;
pub mod engine;
pub mod frames;
pub mod system;

/// A comma-separated list of `what`s (`--peer a,b`), each one of `all` by
/// its `name`; the error names the one not known and the choices.
pub fn parse_names<T: Copy>(
    list: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<Vec<T>, String> {
    list.split(',')
        .map(|s| {
            all.iter().copied().find(|x| name(*x) == s).ok_or_else(|| {
                let choices: Vec<&str> = all.iter().map(|x| name(*x)).collect();
                format!("unknown {what} \"{s}\" (one of {})", choices.join(", "))
            })
        })
        .collect()
}
