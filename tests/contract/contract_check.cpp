// Checks what the contract program wrote: the same keys and shapes as the pretrained file (so
// safetensors.torch.load_file and load_state_dict take it back), the frozen fc1 bit-for-bit
// unchanged, and the trained fc2 changed.
#include <sft/io/safetensors.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s pretrained.safetensors finetuned.safetensors\n", argv[0]);
        return 2;
    }
    try {
        auto before = sft::io::load_safetensors<float>(argv[1]);
        auto after = sft::io::load_safetensors<float>(argv[2]);
        int failures = 0;
        auto fail = [&](const std::string& what) {
            std::fprintf(stderr, "contract_check: %s\n", what.c_str());
            ++failures;
        };
        if (before.size() != after.size()) fail("the key sets differ in size");
        for (const auto& [key, t] : before) {
            auto it = after.find(key);
            if (it == after.end()) {
                fail("missing key " + key);
                continue;
            }
            if (it->second.shape() != t.shape()) {
                fail(key + ": shape " + it->second.shape().str() + " vs " + t.shape().str());
                continue;
            }
            std::size_t changed = 0;
            for (std::size_t i = 0; i < t.numel(); ++i) changed += t[i] != it->second[i];
            const bool frozen = key.rfind("fc1.", 0) == 0;
            if (frozen && changed) fail(key + " is frozen but " + std::to_string(changed) + " values changed");
            if (!frozen && changed == 0) fail(key + " is trainable but did not change");
            std::printf("%s %s changed=%zu\n", key.c_str(), t.shape().str().c_str(), changed);
        }
        return failures ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "contract_check: %s\n", e.what());
        return 1;
    }
}
