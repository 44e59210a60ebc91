#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dualrouter_testkit::fuzzing::response_translate(data);
});
