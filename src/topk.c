/* Top-k selection for classifier scores. */
#include "pose_internal.h"

pose_status pose_top_k(const float *scores, size_t count, size_t k, size_t *indices,
                       float *values) {
  static const char fn[] = "pose_top_k";
  POSE_CHECK_PTR(fn, scores);
  POSE_CHECK_PTR(fn, indices);
  POSE_CHECK_NONZERO(fn, count);
  POSE_CHECK_NONZERO(fn, k);
  if (k > count) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: k is %zu, need <= count %zu", fn, k, count);
  }
  /* Insertion into a sorted prefix: O(count * k), fine for class counts. NaN ranks last. */
  size_t filled = 0;
  for (size_t i = 0; i < count; i++) {
    float s = scores[i];
    size_t pos = filled;
    while (pos > 0) {
      float prev = scores[indices[pos - 1]];
      bool better = (s > prev) || (prev != prev && s == s); /* beats it, or it is NaN */
      if (!better) break;
      pos--;
    }
    if (pos >= k) continue;
    size_t last = filled < k ? filled : k - 1;
    for (size_t j = last; j > pos; j--) indices[j] = indices[j - 1];
    indices[pos] = i;
    if (filled < k) filled++;
  }
  if (values != NULL) {
    for (size_t j = 0; j < k; j++) values[j] = scores[indices[j]];
  }
  return POSE_OK;
}
