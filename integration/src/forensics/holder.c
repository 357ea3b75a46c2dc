/*
 * The process revive's forensic tests take checkpoints of. Once /secret appears it reads
 * the secret, unlinks the file and keeps the secret only in memory: a copy on the heap and
 * one in main's stack frame. It then holds what an analyst looks for: an environment, a
 * child process (busybox tail -f, whose sleeps a checkpoint may cut short without ending
 * it), a file open for writing at a known position, a TCP
 * listener on 127.0.0.1:7070, a UDP socket on 127.0.0.1:7071 and a listening unix socket
 * /tmp/holder.sock; and it ticks in a loop three calls deep, for a backtrace. A file
 * /opened appearing makes it open /etc/hostname, for a second checkpoint to differ by.
 * /holding says it holds all of this.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

char banner[] = "revive holder: a secret held in memory only";
volatile unsigned long ticks;
static char *heap_secret;
static int late_fd = -1;

static void nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int inet(int type, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, fd = socket(AF_INET, type, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		return -1;
	if (type == SOCK_STREAM && listen(fd, 4) < 0)
		return -1;
	return fd;
}

static int unix_listener(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strncpy(a.sun_path, path, sizeof a.sun_path - 1);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0)
		return -1;
	return fd;
}

static void tick(void)
{
	ticks++;
	if (late_fd < 0 && access("/opened", F_OK) == 0)
		late_fd = open("/etc/hostname", O_RDONLY);
	nap(100);
}

static void hold(const char *stack_secret)
{
	while (stack_secret[0])
		tick();
}

int main(void)
{
	char stack_secret[256];
	char buf[256];
	ssize_t n = -1;
	int fd;

	while ((fd = open("/secret", O_RDONLY)) < 0)
		nap(50);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	unlink("/secret");
	if (n <= 0)
		return 2;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	heap_secret = malloc(strlen(buf) + 1);
	strcpy(heap_secret, buf);
	strcpy(stack_secret, buf);
	memset(buf, 0, sizeof buf);

	if (fork() == 0) {
		execl("/bin/busybox", "tail", "-f", "/dev/null", (char *)NULL);
		_exit(127);
	}
	fd = open("/tmp/holder.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "holder: 24 bytes written", 24) != 24)
		return 3;
	if (inet(SOCK_STREAM, 7070) < 0 || inet(SOCK_DGRAM, 7071) < 0 ||
	    unix_listener("/tmp/holder.sock") < 0)
		return 4;
	close(open("/holding", O_WRONLY | O_CREAT, 0644));
	hold(stack_secret);
	return heap_secret[0];
}
