#ifndef HATO_CTL_DOCTOR_H
#define HATO_CTL_DOCTOR_H
/* hatoctl doctor: the sending setup as the receivers see it in DNS. */
struct hato_config;
int cmd_doctor(const struct hato_config *cf, int argc, char **argv);
#endif
